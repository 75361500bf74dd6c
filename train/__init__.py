"""edgevision.train"""
