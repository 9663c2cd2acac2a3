"""`rapport view`: the corpus as a web page on loopback (the page's routes, rendering and the
parameters it accepts); reviews go to the store through store.reviews.

May import: config, store.
"""
