# Node C of the HIT6 lab: registers with the registry, greets every contact
# it gets back, and answers the greetings of those that register after it.
#
# A reconstruction of the lab's original program from its description (the
# originals are not in this repository), stdlib only, as the lab's students
# wrote it. The benchmark (`bench --only originals`) runs it only to price
# our registry and nodes against it, and counts the lines it prints.
#
# Usage: python3 -u node.py REGISTRY_IP REGISTRY_PORT
import json
import socket
import sys
import threading


def atender(conn):
    saludo = json.loads(conn.recv(1024))
    print(f"Saludado por {saludo['ip']}:{saludo['puerto']}")
    conn.sendall(json.dumps({"mensaje": "Hola, un gusto!"}).encode())
    conn.close()


def escuchar(s):
    while True:
        conn, addr = s.accept()
        threading.Thread(target=atender, args=(conn,)).start()


def saludar(contacto, puerto):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.connect((contacto["ip"], int(contacto["puerto"])))
    saludo = {"mensaje": "Hola, soy un nodo C", "ip": "127.0.0.1", "puerto": puerto}
    c.sendall(json.dumps(saludo).encode())
    respuesta = json.loads(c.recv(1024))
    c.close()
    return respuesta["mensaje"]


s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
s.listen()
puerto = s.getsockname()[1]
print(f"Escuchando en el puerto {puerto}")
threading.Thread(target=escuchar, args=(s,)).start()

r = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
r.connect((sys.argv[1], int(sys.argv[2])))
r.sendall(json.dumps({"ip": "127.0.0.1", "puerto": puerto}).encode())
# Read until the registry closes: one recv(1024) would cut the list short
# beyond about 25 contacts.
respuesta = b""
while True:
    parte = r.recv(4096)
    if not parte:
        break
    respuesta += parte
r.close()
contactos = json.loads(respuesta)
print(f"Registrado, contactos: {len(contactos)}")

for contacto in contactos:
    try:
        mensaje = saludar(contacto, puerto)
        print(f"Saludo enviado a {contacto['ip']}:{contacto['puerto']}: {mensaje}")
    except OSError as error:
        print(f"No se pudo saludar a {contacto['ip']}:{contacto['puerto']}: {error}")
