"""Operations console: the web page an integration team lives in (find a message, see its journey,
replay dead letters, watch the estate). Pure core: read models (:mod:`.readmodels`), who is asking
(:mod:`.identity`), the request handler and its JSON API (:mod:`.app`), server-rendered pages
(:mod:`.pages`). The HTTP adapter is ``functions/console.py``. Design: ``docs/console.md``.
"""
