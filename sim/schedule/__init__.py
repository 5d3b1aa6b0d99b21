"""The schedule as data: programs recorded at zero time and the timed event graph derived
from them."""
