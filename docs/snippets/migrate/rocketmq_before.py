"""Before: RocketMQ 5's Python client (rocketmq-python-client), syntax-checked, not run."""

from rocketmq import ClientConfiguration, Credentials, Message, Producer, SimpleConsumer

config = ClientConfiguration("127.0.0.1:8081", Credentials())

producer = Producer(config, ("orders",))
producer.startup()
msg = Message()
msg.topic = "orders"
msg.body = b'{"id": 1}'
msg.tag = "paid"
msg.keys = "order-1"
msg.add_property("region", "eu")
receipt = producer.send(msg)  # SendReceipt: message_id, offset, ...
producer.shutdown()

consumer = SimpleConsumer(config, "billing")
consumer.startup()
consumer.subscribe("orders")
for received in consumer.receive(32, 15):  # at most 32, invisible for 15 s
    print(received.message_id, received.body)
    consumer.ack(received)
consumer.shutdown()
