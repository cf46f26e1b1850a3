/**
 * Model presets: everything the embedder needs to know about an ONNX image encoder besides its path.
 * Values come from each model's own documentation (see `../shared/models/README.md` for the ImageNet
 * models; CLIP's preprocessing from openai/CLIP `clip.py` `_transform`).
 */
export interface ModelPreset {
  /** Preset name, also the default folder name under MODELS_DIR. */
  readonly name: string;
  /** ONNX graph input name; float32 NCHW `[batch, 3, inputSize, inputSize]`. */
  readonly inputName: string;
  /** ONNX graph output holding the embedding `[batch, dimension]`. */
  readonly outputName: string;
  /** Embedding length (elements). */
  readonly dimension: number;
  /** Side of the square centre crop fed to the model (pixels). */
  readonly inputSize: number;
  /** With {@link resizeMode} `crop`, the shorter image side is resized to this before the centre crop (pixels). */
  readonly resizeShorterSide: number;
  /**
   * How a non-square image is made square: `crop` resizes the shorter side to {@link resizeShorterSide}
   * and cuts the centre square; `fill` resizes the whole image to the input square, aspect not kept;
   * `pad` fits the whole image inside the square (letterbox). Unset: `crop`.
   */
  readonly resizeMode?: "crop" | "fill" | "pad";
  /**
   * A 4-D tensor inside the model's graph whose channel statistics are the texture descriptor
   * (`src/embedding/texture.ts`), used to tell defect from normal images; unset: none.
   */
  readonly textureTensor?: string;
  /** Resampling kernel used for the resize (sharp kernel name). */
  readonly resizeKernel: "linear" | "cubic" | "lanczos3";
  /** Per-channel RGB mean, applied after scaling pixels to [0, 1]. */
  readonly mean: readonly [number, number, number];
  /** Per-channel RGB standard deviation, applied after the mean. */
  readonly std: readonly [number, number, number];
  /** Where a production user gets the weights. */
  readonly source: string;
  /**
   * sha256 (hex) of the file shipped in the repository at `models/<name>/model.onnx`, checked whenever the
   * file is loaded from `MODELS_DIR/<name>/model.onnx`; absent for presets that do not ship.
   */
  readonly shippedSha256?: string;
  /**
   * Cosine similarity (raw embedding) to the nearest gallery image at which a new image is reported as a
   * near-duplicate (a resized or recompressed copy): the lowest with precision >= 0.99 on every shared
   * dataset against each image's nearest distinct image of its class (`npm run calibrate:near-duplicates`,
   * docs/near-duplicates.md).
   */
  readonly nearDuplicateSimilarity: number;
}

/** torchvision ImageNet normalisation (https://pytorch.org/vision/stable/models.html). */
const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/**
 * ImageNet presets see the whole image: it is resized to the 224 x 224 input (`fill`, aspect not kept)
 * instead of torchvision's shorter side to 256 + centre crop. Inspection photos are framed on the part and
 * defects sit at the borders as often as in the middle; a crop of an elongated part (magnetic_tile's `fray`
 * images are 2.3:1) drops most of it. Measured with `npx tsx eval/offline.ts` (int8 MobileNetV2,
 * held-out P@10 merged, raw / adapted space): magnetic_tile shorter side 224 + crop 0.655 / 0.754,
 * letterbox (`pad`) 0.678 / 0.800, `fill` 0.667 / 0.821. neu_det and xsdd are square, so every mode gives
 * them the same input (xsdd's few non-square files: adapted 0.992 -> 0.991). Earlier, shorter side 224
 * instead of 256 before the crop: xsdd 0.912 -> 0.933, neu_det 0.978 -> 0.983 (direct run, raw).
 */
const FULL_VIEW = 224;

/** CLIP normalisation, openai/CLIP `clip/clip.py` `_transform`. */
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** Every preset the service knows, by name. */
export const MODEL_PRESETS = {
  "mobilenetv2-12-int8": {
    name: "mobilenetv2-12-int8",
    inputName: "input",
    outputName: "features",
    dimension: 1280,
    inputSize: 224,
    resizeShorterSide: FULL_VIEW,
    resizeMode: "fill",
    resizeKernel: "linear",
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    nearDuplicateSimilarity: 0.979,
    source:
      "ONNX Model Zoo mobilenetv2-12-int8 with a DequantizeLinear node exposing the pooled 1280-d tensor as `features`; shipped in models/mobilenetv2-12-int8/",
    // The 576-channel 14 x 14 expansion of the 13th inverted-residual block (stride 16, before the last
    // downsampling): chosen over the 96-channel block output (`426_quantized`) and the 1280-channel 7 x 7
    // map by cross-validation on the magnetic_tile gallery (docs/evaluation.md, "Type prior: which descriptor, which shift").
    textureTensor: "591_quantized",
    // The file in models/mobilenetv2-12-int8/ (provenance in its SOURCE.md).
    shippedSha256: "025ec4d51a076d16eea96f055c502396baa8ea1ca874b88983725e0609f4a678",
  },
  "mobilenetv2-1.0": {
    name: "mobilenetv2-1.0",
    inputName: "input",
    outputName: "features",
    dimension: 1280,
    inputSize: 224,
    resizeShorterSide: FULL_VIEW,
    resizeMode: "fill",
    resizeKernel: "linear",
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    nearDuplicateSimilarity: 0.984,
    source: "ONNX Model Zoo mobilenetv2-7 (fp32), classifier removed, output `features`",
  },
  "squeezenet1.1": {
    name: "squeezenet1.1",
    inputName: "input",
    outputName: "features",
    dimension: 512,
    inputSize: 224,
    resizeShorterSide: FULL_VIEW,
    resizeMode: "fill",
    resizeKernel: "linear",
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    nearDuplicateSimilarity: 0.994,
    source: "ONNX Model Zoo squeezenet1.1 (fp32), output `features`",
  },
  "clip-vit-b32": {
    name: "clip-vit-b32",
    inputName: "pixel_values",
    outputName: "image_embeds",
    dimension: 512,
    inputSize: 224,
    resizeShorterSide: 224,
    resizeKernel: "cubic",
    mean: CLIP_MEAN,
    std: CLIP_STD,
    nearDuplicateSimilarity: 0.97, // not calibrated: its weights are not on the team's machines
    source:
      "CLIP ViT-B/32 image tower with projection, e.g. Hugging Face Xenova/clip-vit-base-patch32 onnx/vision_model.onnx (input `pixel_values`, output `image_embeds`)",
  },
} as const satisfies Record<string, ModelPreset>;

/** Name of a known preset. */
export type ModelPresetName = keyof typeof MODEL_PRESETS;

/** Preset names, for validation and help texts. */
export const MODEL_PRESET_NAMES = Object.keys(MODEL_PRESETS) as [ModelPresetName, ...ModelPresetName[]];
