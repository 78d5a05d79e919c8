import sys

try:
    from romlab.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing romlab
    print("romlab: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
