import type {
  BrowsedImage,
  GalleryBrowseFilter,
  ImageRepository,
  LabelCount,
  ProductCount,
} from "../db/images.repository.js";
import { errors } from "../shared/errors.js";
import type { BlobStore } from "../storage/blob-store.js";

/** A gallery image with presigned URLs, as the gallery browser shows it. */
export interface GalleryImageView extends BrowsedImage {
  thumbnailUrl: string | null;
  downloadUrl: string | null;
}

/** One page of the gallery browser. */
export interface GalleryPage {
  total: number;
  images: GalleryImageView[];
  /** Image id to continue after; null on the last page. */
  nextCursor: number | null;
}

/** Largest page the browser may ask for. */
export const MAX_GALLERY_PAGE = 100;

/**
 * The gallery as the web app browses it (V2, from the database): labels with counts, and pages of images
 * with presigned thumbnail and original URLs.
 */
export function createGalleryService({
  repository,
  blobStore,
  presignExpirySeconds,
}: {
  repository: ImageRepository;
  blobStore: BlobStore;
  presignExpirySeconds: number;
}) {
  const presign = (key: string | null | undefined) =>
    key ? blobStore.presignedGetUrl(key, presignExpirySeconds) : Promise.resolve(null);

  const withUrls = async (r: BrowsedImage): Promise<GalleryImageView> => ({
    ...r,
    thumbnailUrl: await presign(r.thumbnailKey),
    downloadUrl: await presign(r.storageUrl ? blobStore.keyFromStorageUrl(r.storageUrl) : null),
  });

  return {
    /** Products by code, with image counts. */
    products: (): Promise<ProductCount[]> => repository.listProducts(),

    /** Defect types by code, with image counts. */
    defectTypes: (): Promise<LabelCount[]> => repository.listDefectTypes(),

    /**
     * Up to `first` images matching `filter`, after image id `after`.
     * @throws DomainError BAD_USER_INPUT when `first` is outside 1 to {@link MAX_GALLERY_PAGE}.
     */
    async page(filter: GalleryBrowseFilter, first: number, after: number): Promise<GalleryPage> {
      if (!Number.isInteger(first) || first < 1 || first > MAX_GALLERY_PAGE)
        throw errors.badInput(`first must be an integer from 1 to ${MAX_GALLERY_PAGE}; got ${first}.`);
      // One row more than asked tells whether another page follows.
      const { rows, total } = await repository.browseGallery(filter, {
        afterImageId: after,
        limit: first + 1,
      });
      const shown = rows.slice(0, first);
      const images = await Promise.all(shown.map(withUrls));
      return { total, images, nextCursor: rows.length > first ? (shown.at(-1)?.imageId ?? null) : null };
    },

    /** Gallery images by id, with presigned URLs (ids that do not exist are left out), by id. */
    async images(imageIds: readonly number[]): Promise<GalleryImageView[]> {
      return Promise.all((await repository.browseByIds(imageIds)).map(withUrls));
    },
  };
}

/** The gallery service's type, derived from its factory. */
export type GalleryService = ReturnType<typeof createGalleryService>;
