/** The two kinds of gallery image; each has its own index. */
export type ImageType = "defect" | "normal";
/** Every image type, in index order. */
export const IMAGE_TYPES: readonly ImageType[] = ["defect", "normal"];
/** A matcher implementation version: V1 (local folder, file names) or V2 (database). */
export type MatcherVersion = "v1" | "v2";
/** Every matcher version. */
export const MATCHER_VERSIONS: readonly MatcherVersion[] = ["v1", "v2"];
/** Defect codes the old system's file names use for normal images. */
export const NORMAL_DEFECT_CODES: ReadonlySet<string> = new Set(["normal", "good", "ok"]);
