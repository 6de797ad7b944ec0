// Medplum's Hl7Server as an unpersisted peer for bench/mllp_throughput.py: every message is parsed by
// @medplum/core's Hl7Message and answered with its buildAck() (AA). No storage. Prints the port it
// listens on (an ephemeral one) as one line, then serves until stdin closes or SIGTERM.
import { Hl7Server } from '@medplum/hl7';

const server = new Hl7Server((connection) => {
  connection.addEventListener('message', (event) => {
    connection.send(event.message.buildAck());
  });
});

await server.start(0);
process.stdout.write(`${server.server.address().port}\n`);

const stop = async () => {
  await server.stop({ forceDrainTimeoutMs: 1000 });
  process.exit(0);
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
