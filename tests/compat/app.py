# The compat app: every compat service in one endpoint, composed the way the official examples
# compose theirs (restatedev/sdk-python examples/example.py @ 5dfca1afb504 and restatedev/examples
# python/tutorials/tour-of-orchestration-python/__main__.py @ 2d429daae784):
#   app = restate.app(services=[...])
# Only the import lines name our package.
"""All compat services (tests/compat/*), served by tests/test_compat.py."""

import framework as restate
from tests.compat.greeter import greeter
from tests.compat.random_greeter import random_greeter
from tests.compat.state import my_object
from tests.compat.tour_communication import concert_ticketing_service
from tests.compat.tour_concurrenttasks import parallel_subscription_service
from tests.compat.tour_events import payments
from tests.compat.tour_retries import my_service
from tests.compat.tour_sagas import subscription_saga
from tests.compat.tour_utils import email_service, payment_service
from tests.compat.virtual_object import counter
from tests.compat.workflow import payment

app = restate.app(
    services=[
        greeter,
        random_greeter,
        counter,
        my_object,
        payment,
        payments,
        subscription_saga,
        concert_ticketing_service,
        parallel_subscription_service,
        payment_service,
        email_service,
        my_service,
    ]
)
