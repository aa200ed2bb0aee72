"""The example application: ``python -m framework run services.app:app``."""

from framework import app as make_app
from services.counter import counter
from services.greeter import greeter

app = make_app([greeter, counter])
