"""A local Azure Functions host for machines without Core Tools.

It runs the ``FunctionApp`` that ``function_app.py`` registers (discovered through the azure.functions
registry, ``FunctionApp.get_functions()``): HTTP triggers on ``http://127.0.0.1:7071/api/...``, Service Bus
topic triggers fed from the configured message bus (the embedded SQLite bus by default), and timer
triggers on their NCRONTAB schedules. It is a development tool; Azure runs the real Functions host.
"""
