"""The evaluate pipeline: the measured study."""
