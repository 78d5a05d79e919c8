"""`python -m romlab` and the `romlab` console script.

Ctrl-C is answered with one line and exit status 130 wherever it lands: during the imports,
inside a verb (romlab.cli.main handles it), or just after the verb returned.
"""
import signal
import sys


def run() -> None:
    try:
        from romlab.cli import main

        rc = main()
        # The verb is done: a Ctrl-C from here on would only turn its exit status into a
        # traceback or a death by signal while the interpreter shuts down.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:  # during the imports, or between the verb's own handler and the line above
        print("romlab: interrupted", file=sys.stderr)
        rc = 130
    sys.exit(rc)


if __name__ == "__main__":
    run()
