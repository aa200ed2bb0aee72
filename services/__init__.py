"""Example services to copy: a greeter with durable steps and a counter object."""
