CREATE TABLE "active_indexes" (
	"matcher_version" text NOT NULL,
	"image_type" text NOT NULL,
	"index_version_id" text NOT NULL,
	"previous_index_version_id" text,
	"activated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"activated_by" text NOT NULL,
	"reason" text NOT NULL,
	CONSTRAINT "active_indexes_matcher_version_image_type_pk" PRIMARY KEY("matcher_version","image_type")
);
--> statement-breakpoint
CREATE TABLE "index_versions" (
	"index_version_id" text PRIMARY KEY NOT NULL,
	"matcher_version" text NOT NULL,
	"image_type" text NOT NULL,
	"model_id" text NOT NULL,
	"factory" text NOT NULL,
	"count" integer NOT NULL,
	"recall_at10" double precision,
	"gallery_fingerprint" text,
	"index_sha256" text NOT NULL,
	"artifact_key" text NOT NULL,
	"artifact_sha256" text NOT NULL,
	"artifact_bytes" bigint NOT NULL,
	"built_at" timestamp with time zone NOT NULL,
	"built_by" text NOT NULL,
	"published_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "matcher_version_changes" (
	"change_id" serial PRIMARY KEY NOT NULL,
	"version" text NOT NULL,
	"reason" text NOT NULL,
	"set_by" text NOT NULL,
	"replica_id" text NOT NULL,
	"set_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "rebuild_tasks" (
	"task_id" text PRIMARY KEY NOT NULL,
	"job_id" text,
	"targets" jsonb NOT NULL,
	"trigger" text NOT NULL,
	"status" text NOT NULL,
	"current" jsonb,
	"progress" jsonb NOT NULL,
	"replica_id" text,
	"attempt" integer DEFAULT 0 NOT NULL,
	"requested_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"duration_ms" double precision,
	"error" text,
	"failures" jsonb NOT NULL,
	"results" jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "replicas" (
	"replica_id" text PRIMARY KEY NOT NULL,
	"host" text NOT NULL,
	"pid" integer NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"last_seen_at" timestamp with time zone NOT NULL,
	"ready" boolean NOT NULL,
	"served" jsonb NOT NULL
);
--> statement-breakpoint
ALTER TABLE "active_indexes" ADD CONSTRAINT "active_indexes_index_version_id_index_versions_index_version_id_fk" FOREIGN KEY ("index_version_id") REFERENCES "public"."index_versions"("index_version_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "index_versions_target_idx" ON "index_versions" USING btree ("matcher_version","image_type","published_at");--> statement-breakpoint
CREATE UNIQUE INDEX "rebuild_tasks_one_open" ON "rebuild_tasks" USING btree ((true)) WHERE "rebuild_tasks"."status" in ('queued', 'running');--> statement-breakpoint
CREATE INDEX "rebuild_tasks_created_idx" ON "rebuild_tasks" USING btree ("created_at");