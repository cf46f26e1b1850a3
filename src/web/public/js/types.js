// @ts-check
// JSDoc types of the GraphQL answers the pages read: the fields their documents select, with the schema's
// names and wire values (enums in capitals). Types only: no page imports this file at run time.
// (The codegen types in src/graphql/generated are the resolvers' view: lowercase enum values and the
// service's own result types, not what a client receives.)

/**
 * @typedef {object} ImageLabels
 * @property {string | null} [defectCode] - null for normal images
 * @property {string | null} [defectName]
 */

/**
 * @typedef {object} SearchHit
 * @property {number} rank
 * @property {number} score
 * @property {"RAW" | "ADAPTED"} space
 * @property {string | null} imageId
 * @property {"DEFECT" | "NORMAL"} imageType
 * @property {string} productCode
 * @property {string | null} productName
 * @property {string | null} defectCode
 * @property {string | null} defectName
 * @property {string | null} filePath
 * @property {string | null} downloadUrl
 * @property {string | null} thumbnailUrl
 * @property {string | null} contentSha256
 */

/**
 * @typedef {object} Suggestion
 * @property {string} productCode
 * @property {string | null} defectCode
 * @property {string | null} defectName
 * @property {number} share
 * @property {number} votes
 */

/**
 * @typedef {object} HitGroup
 * @property {string} productCode
 * @property {string | null} defectCode
 * @property {string | null} defectName
 * @property {number} share
 * @property {SearchHit[]} hits
 */

/**
 * @typedef {object} SearchResult
 * @property {"V1" | "V2"} version
 * @property {"DEFECT" | "NORMAL" | "ALL"} imageType
 * @property {number} indexSize
 * @property {number} tookMs
 * @property {"RAW" | "ADAPTED"} space
 * @property {Suggestion | null} suggestion
 * @property {SearchHit[]} hits
 * @property {HitGroup[] | null} groups
 */

/**
 * @typedef {object} GalleryImage
 * @property {string} imageId
 * @property {string} productCode
 * @property {string | null} productName
 * @property {string | null} defectCode
 * @property {string | null} defectName
 * @property {string | null} thumbnailUrl
 * @property {string | null} [downloadUrl]
 */

/**
 * @typedef {object} RebuildTask
 * @property {string} id
 * @property {"QUEUED" | "RUNNING" | "SUCCEEDED" | "FAILED"} status
 * @property {string | null} error
 * @property {number | null} [durationMs]
 * @property {{ total: number, processed: number, newlyEmbedded: number, failed: number }} progress
 * @property {{ version: string, imageType: string } | null} [current]
 */

/**
 * @typedef {object} IndexStatus
 * @property {"V1" | "V2"} version
 * @property {"DEFECT" | "NORMAL"} imageType
 * @property {boolean} ready
 * @property {number} count
 * @property {string | null} modelId
 * @property {string | null} factory
 * @property {string | null} builtAt
 * @property {string | null} source
 * @property {number | null} recallAt10
 * @property {string | null} indexVersion
 * @property {string | null} activeIndexVersion
 * @property {{ served: "RAW" | "ADAPTED", reason: string | null, typePrior: string | null }} adaptedSpace
 */

/**
 * @typedef {object} ServiceStatus
 * @property {"V1" | "V2"} activeVersion
 * @property {string} replicaId
 * @property {IndexStatus[]} indexes
 * @property {{ id: string, ready: boolean, lastSeenAt: string,
 *   served: { version: string, imageType: string, indexVersion: string | null }[] }[]} replicas
 * @property {{ id: string, version: string, imageType: string, count: number, builtBy: string,
 *   publishedAt: string, deletedAt: string | null, active: boolean }[]} indexVersions
 */

/**
 * @typedef {object} EmbeddingModel
 * @property {string} modelId
 * @property {"ACTIVE" | "CANDIDATE" | "RETIRED"} state
 * @property {string} preset
 * @property {number} dimension
 * @property {number} embedded
 * @property {number} galleryImages
 * @property {boolean} loaded
 * @property {string | null} problem
 * @property {boolean} promotable
 * @property {string | null} notPromotableReason
 * @property {string} registeredAt
 * @property {string | null} retiredAt
 * @property {RebuildTask | null} preparation
 */

/**
 * @typedef {object} ClassQuality
 * @property {string} label - product/defect
 * @property {number} queries
 * @property {number} p10
 * @property {number} suggestionAccuracy
 */

/**
 * @typedef {object} ModelQuality
 * @property {string} modelId
 * @property {number} queries
 * @property {number} p10
 * @property {number} suggestionAccuracy
 * @property {number | null} cvRawP10
 * @property {number | null} cvAdaptedP10
 * @property {"RAW" | "ADAPTED"} servedSpace
 * @property {ClassQuality[]} perClass
 */

/**
 * @typedef {object} ShadowSummary
 * @property {number} queries
 * @property {number | null} overlapAt10
 * @property {number | null} top1Agreement
 * @property {number | null} suggestionAgreement
 * @property {number | null} candidateP50Ms
 * @property {number | null} activeP50Ms
 */

/**
 * @typedef {object} ModelComparison
 * @property {ModelQuality} active
 * @property {ModelQuality} candidate
 * @property {ShadowSummary | null} shadow
 */

/**
 * @typedef {object} ModelSwitch
 * @property {string} modelId
 * @property {string | null} previousModelId
 * @property {number} tookMs
 */

export {};
