"""The process tree scripts/criu/sockets-proof.sh checkpoints: a TCP listener, an established
TCP connection between the two processes, a bound UDP socket. The pair ping-pongs a counter,
appending each value to LOG (argv[1]) every 0.2 s."""

import os
import socket
import sys
import time

listener = socket.socket()
listener.bind(("127.0.0.1", 5000))
listener.listen(5)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 5001))
if os.fork() == 0:
    conn = socket.create_connection(("127.0.0.1", 5000))
    n = 0
    while True:
        conn.sendall(f"{n}\n".encode())
        n = int(conn.recv(100).decode()) + 1
        with open(sys.argv[1], "a") as log:
            log.write(f"{n}\n")
        time.sleep(0.2)
conn, _ = listener.accept()
while data := conn.recv(100):
    conn.sendall(data)
