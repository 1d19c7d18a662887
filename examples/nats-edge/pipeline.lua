-- The engine on an appliance: every record to the local nats-server's
-- stream LOGS (edge.conf), one message each, subject logs.<container name>.
return {
  outputs = {
    { type = "nats", url = "nats://127.0.0.1:4222", subject = "logs.{name}", stream = "LOGS",
      dead_letter = "/var/lib/engine/nats-dead.jsonl" },
  },
  engine = { state_dir = "/var/lib/engine" },
}
