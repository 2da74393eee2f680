"""Course: the papermill series runner (``textscd run``) and the environment report (chapter 00).
"""
