// async-exit-hook ships no type declarations; this covers the part the service uses
// (https://github.com/Tapppi/async-exit-hook#readme).
declare module "async-exit-hook" {
  interface ExitHook {
    (hook: (done: () => void) => void): void;
    /** Events it handles (signals, exit, beforeExit, message). */
    hookedEvents(): string[];
    /** Stops handling `event`: removes its process listener. */
    unhookEvent(event: string): void;
  }
  const exitHook: ExitHook;
  export default exitHook;
}
