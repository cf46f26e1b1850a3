import os from "node:os";

/** The machine a measurement ran on, printed next to every table. */
export interface MachineInfo {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  platform: string;
  node: string;
  hostname: string;
}

/** Describes this machine (logical cores, CPU model, memory, OS, Node version). */
export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cores: os.availableParallelism?.() ?? cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    hostname: os.hostname(),
  };
}

/** One line: `2 cores, AMD EPYC, 23.4 GiB RAM, Linux ..., Node v20...`. */
export function machineLine(m: MachineInfo): string {
  return `${m.cores} cores, ${m.cpuModel}, ${m.memoryGiB} GiB RAM, ${m.platform}, Node ${m.node}`;
}
