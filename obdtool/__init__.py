"""obdtool: workshop OBD read-out, OBFCM collection with owner refusal, fault clearing and record upload."""

__version__ = "0.1.0"
