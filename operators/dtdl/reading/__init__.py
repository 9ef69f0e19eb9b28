"""The pieces of the DTDL parser; :mod:`twinflow.operators.dtdl.parser` puts them together.

The grammar is recursive (an Interface holds contents, a Component may hold an inline
Interface), so the first pass is one reader built in layers, each in its own module:
:mod:`.notation` (JSON-LD's other spellings rewritten to one, active contexts, partitions),
:mod:`.cotypes` (``@type``, semantic and extension co-types), :mod:`.elements` (what every
element carries), :mod:`.schemas`, :mod:`.contents` and :mod:`.interfaces`.
:mod:`.documents` reads files, :mod:`.contexts` checks ``@context``, :mod:`.language` holds
what differs between DTDL v2 and v3, and :mod:`.resolve` is the second pass over what crosses
files.
"""
