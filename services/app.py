"""The example application: ``python -m framework run services.app:app``."""

from framework import app as make_app
from services.counter import counter
from services.greeter import greeter
from services.signup import signup
from services.trip import payments, trips

app = make_app([greeter, counter, signup, payments, trips])
