"""flagsock's etcd source: flags kept under a key prefix in etcd, read and written through the
v3 JSON gateway (``gateway``), watched so a change made anywhere is served everywhere."""
