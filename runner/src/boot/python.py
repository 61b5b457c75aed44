# Started ahead with `python3 -c`, blocked on fd 3 until the runner sends
# the program's argv and environment. No code of the program runs before.
# Everything is local: the program's globals start empty.


def _sandrun_start():
    import json
    import os
    import sys

    with open(3, "rb") as control:
        message = json.load(control)
    os.environ.update(dict(message["env"]))
    sys.argv = message["argv"]
    # As `python3 main.py` would: an absolute __file__, the script's own
    # directory first on sys.path.
    path = os.path.abspath(sys.argv[0])
    sys.path[0] = os.path.dirname(path)
    main = sys.modules["__main__"].__dict__
    for name in list(main):
        if name not in ("__builtins__", "__name__", "__loader__"):
            del main[name]
    main.update(__file__=path, __doc__=None, __package__=None, __spec__=None, __cached__=None, __annotations__={})
    try:
        with open(path, "rb") as source:
            code = compile(source.read(), path, "exec")
        exec(code, main)
    except Exception as error:
        # The traceback the program would have had: without this file's frames.
        tb = error.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
            tb = tb.tb_next
        # The hook prints the exception's own traceback, so cut that.
        sys.excepthook(type(error), error.with_traceback(tb), tb)
        sys.exit(1)


_sandrun_start()
