"""Test helpers shared by the suite: real servers started from Python packages."""
