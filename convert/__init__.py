"""edgevision.convert"""
