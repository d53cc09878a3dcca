"""Sub-commands of the numdp command line."""
