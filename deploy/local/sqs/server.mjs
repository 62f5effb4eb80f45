// Local SQS emulator. Queues are created by `python -m queuefront.queues`, not here,
// so the same code path creates them on the emulator and on real SQS.
// emulateQueueCreationLifecycle is off: otherwise a deleted queue's name is blocked for 60 s,
// which the tests (one set of queues each) would trip over.
import { createSqsServer } from "local-aws-sqs";

const port = Number(process.env.SQS_PORT ?? 9324);
const hostname = process.env.SQS_HOST ?? "127.0.0.1";

const server = await createSqsServer({
  port,
  hostname,
  emulateQueueCreationLifecycle: false,
  validateDlqDestination: true,
});
console.log(JSON.stringify({ event: "sqs emulator listening", hostname, port }));

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    server.close?.();
    process.exit(0);
  });
}
