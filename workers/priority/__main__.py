"""``python -m workers.priority``."""

from workers.priority.run import main

if __name__ == "__main__":
    main()
