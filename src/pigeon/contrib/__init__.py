"""Framework glue: ``pigeon.contrib.django``."""
