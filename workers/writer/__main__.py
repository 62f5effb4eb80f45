"""``python -m workers.writer``."""

from workers.writer.run import main

if __name__ == "__main__":
    main()
