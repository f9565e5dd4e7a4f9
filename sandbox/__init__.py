"""dbsandbox: practise database mistakes and recoveries on a throwaway database."""

__version__ = "0.1.0"
