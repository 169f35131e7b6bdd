"""The one exception type for bad user input: the CLI prints its message as a single line."""


class VidiffError(ValueError):
    """Bad input (config, prompt, shape, file, checkpoint). The message names the problem and the fix."""
