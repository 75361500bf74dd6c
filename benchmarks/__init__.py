"""edgevision.benchmarks"""
