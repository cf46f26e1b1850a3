/** The JSON body of a GraphQL HTTP response. */
export interface GqlResponse<T = Record<string, unknown>> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } & Record<string, unknown> }[];
}

/** POSTs one GraphQL operation to a real HTTP endpoint. */
export async function gql<T = Record<string, unknown>>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
  token?: string,
): Promise<GqlResponse<T>> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as GqlResponse<T>;
}

/** The `extensions.code` of the first error, or "no error". */
export const errorCode = (r: GqlResponse<unknown>) => r.errors?.[0]?.extensions?.code ?? "no error";

export const SEARCH = /* GraphQL */ `
  query Search($input: SearchSimilarInput!) {
    searchSimilar(input: $input) {
      version
      imageType
      indexSize
      tookMs
      space
      suggestion {
        productCode
        defectCode
        share
        votes
      }
      hits {
        rank
        score
        imageId
        imageType
        productCode
        productName
        defectCode
        defectName
        filePath
        storageUrl
        downloadUrl
        thumbnailUrl
        contentSha256
        space
      }
    }
  }
`;

/** The shape of {@link SEARCH}'s answer. */
export interface SearchAnswer {
  searchSimilar: {
    version: string;
    imageType: string;
    indexSize: number;
    tookMs: number;
    space: "RAW" | "ADAPTED";
    suggestion: { productCode: string; defectCode: string | null; share: number; votes: number } | null;
    hits: {
      rank: number;
      score: number;
      imageId: string | null;
      productCode: string;
      productName: string | null;
      defectCode: string | null;
      defectName: string | null;
      filePath: string | null;
      storageUrl: string | null;
      downloadUrl: string | null;
      thumbnailUrl: string | null;
      contentSha256: string | null;
      space: "RAW" | "ADAPTED";
    }[];
  };
}

export const REBUILD = /* GraphQL */ `
  mutation Rebuild($imageType: ImageTypeSelector!, $version: MatcherVersion) {
    rebuildIndex(imageType: $imageType, version: $version) {
      id
      status
    }
  }
`;

export const TASK = /* GraphQL */ `
  query Task($id: ID!) {
    rebuildTask(id: $id) {
      id
      status
      error
      progress { total processed newlyEmbedded failed }
      results { version imageType count swapMs }
    }
  }
`;

export const STATUS = /* GraphQL */ `
  query {
    status {
      activeVersion
      databaseReachable
      databaseError
      model { modelId dimension }
      indexes { version imageType ready count dimension modelId factory efSearch recallAt10 recallFloor source builtAt checksum adaptedSpace { served reason cvRawP10 cvAdaptedP10 } }
    }
  }
`;

/** The shape of {@link STATUS}'s answer. */
export interface StatusAnswer {
  status: {
    activeVersion: string;
    databaseReachable: boolean;
    databaseError: string | null;
    model: { modelId: string; dimension: number };
    indexes: {
      version: string;
      imageType: string;
      ready: boolean;
      count: number;
      factory: string | null;
      efSearch: number | null;
      recallAt10: number | null;
      recallFloor: number;
      source: string | null;
      adaptedSpace: {
        served: "RAW" | "ADAPTED";
        reason: string;
        cvRawP10: number | null;
        cvAdaptedP10: number | null;
      };
    }[];
  };
}

interface TaskAnswer {
  rebuildTask: {
    status: string;
    error: string | null;
    progress: { total: number; processed: number; newlyEmbedded: number; failed: number };
    results: { version: string; imageType: string; count: number; swapMs: number }[];
  } | null;
}

/** Starts a rebuild over HTTP and polls it until it finishes; returns the finished task. */
export async function rebuildAndWait(url: string, token: string, imageType: string, version: string) {
  const started = await gql<{ rebuildIndex: { id: string } }>(url, REBUILD, { imageType, version }, token);
  const id = started.data?.rebuildIndex.id;
  if (!id) throw new Error(`rebuildIndex failed: ${JSON.stringify(started.errors)}`);
  for (;;) {
    const t = (await gql<TaskAnswer>(url, TASK, { id })).data?.rebuildTask;
    if (t && t.status !== "RUNNING" && t.status !== "QUEUED") return t;
    await new Promise((r) => setTimeout(r, 100));
  }
}
