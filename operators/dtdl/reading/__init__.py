"""The pieces of the DTDL v3 parser; :mod:`twinflow.operators.dtdl.parser` puts them together.

The grammar is recursive (an Interface holds contents, a Component may hold an inline
Interface), so the first pass is one reader built in layers, each in its own module:
:mod:`.elements` (what every element carries), :mod:`.schemas`, :mod:`.contents` and
:mod:`.interfaces`. :mod:`.documents` reads files, :mod:`.contexts` checks ``@context`` and
:mod:`.resolve` is the second pass over what crosses files.
"""
