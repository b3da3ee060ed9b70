// Runs the `desk_call` example (the SIP side of a scenario) and follows its steps.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

// Starts `desk_call ARGS...` against the test server; `step(name)` resolves when it
// prints that step, and rejects if it exits first.
export function deskCall(...args) {
  const child = spawn(process.env.DESK_CALL, [args[0], process.env.SIP_ADDR, ...args.slice(1)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const seen = new Set();
  const waiters = [];
  let exit = null;
  const settle = () => {
    for (const w of [...waiters]) {
      if (seen.has(w.name)) w.resolve();
      else if (exit !== null) w.reject(new Error(`desk_call exited (${exit}) before "${w.name}"`));
      else continue;
      waiters.splice(waiters.indexOf(w), 1);
    }
  };
  createInterface({ input: child.stdout }).on("line", (line) => { seen.add(line.trim()); settle(); });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => {
    exit = code ?? signal;
    settle();
    resolve(exit);
  }));
  return {
    step: (name) => new Promise((resolve, reject) => { waiters.push({ name, resolve, reject }); settle(); }),
    exited,
    kill: () => { if (exit === null) child.kill(); },
  };
}
