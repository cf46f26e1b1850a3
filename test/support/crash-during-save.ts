// Child process of the index store's crash test: saves a first index completely, then a second one, and
// SIGKILLs itself at the save step named in argv[3] (the fault hook of createIndexStore).
import { createFaissWorkerBackend } from "../../src/index/faiss/faiss-worker.backend.js";
import { columnsFromEntries } from "../../src/index/gallery-columns.js";
import { createIndexStore, type SaveStep } from "../../src/index/index.store.js";

const [root, step] = process.argv.slice(2) as [string, SaveStep];
const DIM = 8;
const backend = createFaissWorkerBackend();
const store = createIndexStore({
  root,
  faultAt: (s) => {
    if (s === step && count === 2) process.kill(process.pid, "SIGKILL");
  },
});
let count = 0;
for (const n of [10, 20]) {
  count++;
  const vectors = new Float32Array(n * DIM).map((_, i) => ((i * 7919) % 13) / 13 + 0.01);
  const { index } = await backend.build({
    dimension: DIM,
    factory: "Flat",
    vectors,
    params: {},
    recall: null,
  });
  await store.save({
    index,
    columns: columnsFromEntries(
      "defect",
      Array.from({ length: n }, (_, i) => ({
        imageId: i + 1,
        imageType: "defect" as const,
        productCode: "P",
        productName: null,
        defectCode: "d",
        defectName: null,
        filePath: null,
        storageUrl: null,
        contentSha256: null,
      })),
    ),
    manifest: {
      formatVersion: 2,
      matcherVersion: "v2",
      imageType: "defect",
      modelId: "m@1",
      dimension: DIM,
      count: n,
      configuredFactory: "Flat",
      factory: "Flat",
      params: {},
      recall: null,
      buildMs: 1,
      galleryFingerprint: null,
      builtAt: new Date().toISOString(),
    },
  });
  await index.close();
}
process.exit(0);
