"""Development and test tooling: a local restate-server, the app in a child process, the dev loop.

Nothing is re-exported here; import each name from the module that defines it:

- ``install``: finds or installs the restate-server binary (npm, cached per version);
- ``processes``: free loopback ports and the child-process base the runners share;
- ``restate_server``: ``RestateServer``, one restate-server node on loopback;
- ``service_process``: ``ServiceProcess``, an app served by ``python -m framework serve``;
- ``admin``: the client of a Restate server's admin API (register, SQL, version);
- ``devloop``: ``python -m framework dev|run``, with its source-file watching;
- ``wait``: polling until a deadline;
- ``errors``: ``RestateServerError``.
"""
