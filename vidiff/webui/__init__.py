"""`vidiff serve`: a gradio app over the pipeline, the evaluation and run folders (gradio is an
optional extra: pip install -e ".[ui]").

limits.py: what a request may ask for and which run folders it may name; jobs.py: the work each tab
does, without gradio (tested directly); app.py: the Blocks layout and the named API endpoints.
"""
from .limits import Limits

__all__ = ["Limits"]
