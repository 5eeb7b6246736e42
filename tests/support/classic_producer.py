"""A faithful replica of the course's classic producer (issue #32), for the tests: kafka-python, JSON values,
no key; ``vente_id`` an integer counter from 1 at every start; ``client_id`` and ``produit_id`` integers of 5
clients and 6 products; ``timestamp`` = ``datetime.now().isoformat()`` (local time, no offset); ``montant`` a
float ``round(quantite * prix, 2)``; ``segment`` Particulier or Entreprise; one sale every 2 s (the tests send
faster). Each sale sent is also written, one JSON line each, to ``--out``."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime

from kafka import KafkaProducer

CLIENTS = [
    {"id": 1, "nom": "Alice Martin", "pays": "France", "segment": "Particulier"},
    {"id": 2, "nom": "Bob Dupont", "pays": "Belgique", "segment": "Entreprise"},
    {"id": 3, "nom": "Chloé Bernard", "pays": "France", "segment": "Particulier"},
    {"id": 4, "nom": "David Leroy", "pays": "Suisse", "segment": "Entreprise"},
    {"id": 5, "nom": "Emma Petit", "pays": "Canada", "segment": "Particulier"},
]
PRODUITS = [
    {"id": 1, "nom": "Ordinateur portable", "categorie": "Informatique", "prix": 899.99},
    {"id": 2, "nom": "Souris", "categorie": "Informatique", "prix": 19.99},
    {"id": 3, "nom": "Chaise de bureau", "categorie": "Mobilier", "prix": 149.5},
    {"id": 4, "nom": "Lampe", "categorie": "Maison", "prix": 35.0},
    {"id": 5, "nom": "Casque audio", "categorie": "Audio", "prix": 79.9},
    {"id": 6, "nom": "Clavier", "categorie": "Informatique", "prix": 49.99},
]


def generer_vente(vente_id: int) -> dict:
    client, produit = random.choice(CLIENTS), random.choice(PRODUITS)
    quantite = random.randint(1, 5)
    return {"vente_id": vente_id, "client_id": client["id"], "produit_id": produit["id"],
            "timestamp": datetime.now().isoformat(), "quantite": quantite,
            "montant": round(quantite * produit["prix"], 2), "client_nom": client["nom"],
            "produit_nom": produit["nom"], "categorie": produit["categorie"], "pays": client["pays"],
            "segment": client["segment"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The course's classic sales producer (a replica).")
    parser.add_argument("--bootstrap-servers", default="localhost:9092", help="Kafka brokers")
    parser.add_argument("--topic", default="ventes_stream", help="topic to send to")
    parser.add_argument("--count", type=int, required=True, help="sales to send, then stop")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two sales (the original: 2)")
    parser.add_argument("--out", required=True, help="file where each sale sent is written as a JSON line")
    args = parser.parse_args(argv)
    producer = KafkaProducer(bootstrap_servers=args.bootstrap_servers,
                             value_serializer=lambda v: json.dumps(v).encode("utf-8"))
    try:
        with open(args.out, "w", encoding="utf-8") as out:
            for vente_id in range(1, args.count + 1):
                vente = generer_vente(vente_id)
                producer.send(args.topic, value=vente)
                out.write(json.dumps(vente) + "\n")
                time.sleep(args.interval)
    finally:
        producer.flush()
        producer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
