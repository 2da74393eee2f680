"""Performance tooling: benchmarks, the cost model and the step profiler (chapter 05, docs/performance.md).
A leaf: nothing in the library imports it, only the command line.
"""
