import os

os.environ.setdefault("AIDLINK_TEST", "1")
