import { readdirSync, readFileSync } from "node:fs";

/** Each thread's Linux nice value in this process, from field 19 of /proc/self/task/<tid>/stat, by thread id. */
export function niceByThread(): Map<number, number> {
  const nice = new Map<number, number>();
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      // After the last ")": the thread's name, inside parentheses, may hold spaces and parentheses.
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      nice.set(Number(tid), Number(fields[16]));
    } catch {
      // ended while listed
    }
  }
  return nice;
}
