# Node D of the HIT6 lab: the registry of contacts.
#
# A reconstruction of the lab's original program from its description (the
# originals are not in this repository), stdlib only, as the lab's students
# wrote it. The benchmark (`bench --only originals`) runs it only to price
# our registry and nodes against it.
#
# Usage: python3 -u registry.py PORT   (0 picks a free port, printed at start)
import json
import socket
import sys

contactos = []

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
# The default backlog: a listen(5) would only drop more SYNs in a burst.
s.listen()
print(f"Registro escuchando en 127.0.0.1:{s.getsockname()[1]}")

# One connection at a time, as the originals: each gets the contacts
# registered before it, as a bare JSON array, and is closed.
while True:
    conn, addr = s.accept()
    datos = json.loads(conn.recv(1024))
    nuevo = {"ip": datos["ip"], "puerto": datos["puerto"]}
    conn.sendall(json.dumps(contactos).encode())
    contactos.append(nuevo)
    conn.close()
    print(f"Registrado {nuevo['ip']}:{nuevo['puerto']}, {len(contactos)} contactos")
