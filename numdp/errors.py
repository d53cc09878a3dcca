"""Exception types shared by all of numdp.

`InputError` marks a user's mistake (bad file, bad key, bad value, bad geometry).  The command
line catches it and prints its message as one line with exit status 2; internal bugs keep their
tracebacks.
"""


class InputError(Exception):
    """A problem with the user's input; the message names the file, key or atom concerned."""
