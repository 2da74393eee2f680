"""textscd_lib — the library behind the TextSCD course notebooks.

Each module holds one idea of the paper "TextSCD: Leveraging Text-based Semantic Guidance for Remote
Sensing Image Semantic Change Detection" and names the chapter (notebook) that teaches it.
"""

__version__ = "0.1.0"
