# Compat copy of restatedev/docs-restate snippets/python/src/develop/state.py @ 8d549e91b5fa
# https://github.com/restatedev/docs-restate/blob/8d549e91b5fa4b3b14fbe0d2bff7ab2374cee0ed/snippets/python/src/develop/state.py
# shown on https://docs.restate.dev/develop/python/state
# Verbatim below this header except the import lines (restate -> framework, and the
# example's own modules -> tests.compat.*). Upstream code: not linted here.
# ruff: noqa
from framework import ObjectContext, VirtualObject

my_object = VirtualObject("Caller")


@my_object.handler()
async def caller(ctx: ObjectContext, arg):
    # <start_statekeys>
    state_keys = ctx.state_keys()
    # <end_statekeys>

    # <start_get>
    my_string = await ctx.get("my-string-key", type_hint=str) or "default-key"
    my_number = await ctx.get("my-number-key", type_hint=int) or 123
    # <end_get>

    # <start_set>
    ctx.set("my-key", "my-new-value")
    # <end_set>

    # <start_clear>
    ctx.clear("my-key")
    # <end_clear>

    # <start_clear_all>
    ctx.clear_all()
    # <end_clear_all>
