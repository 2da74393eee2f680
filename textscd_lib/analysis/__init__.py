"""Analysis, chapters 06-07: error maps and error records, figures in the SECOND colours, caption-vs-error
tables, the caption ablation and TGI's attention maps.
"""
