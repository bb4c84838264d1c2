"""``evaluate`` module scripts (``evaluate.load`` copies and imports them; never import them).

A regular package, so that a non-editable install ships them as it ships any module.
"""
