CREATE TABLE "active_model_changes" (
	"change_id" serial PRIMARY KEY NOT NULL,
	"model_id" text NOT NULL,
	"previous_model_id" text,
	"reason" text NOT NULL,
	"set_by" text NOT NULL,
	"replica_id" text NOT NULL,
	"set_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "embedding_models" (
	"model_id" text PRIMARY KEY NOT NULL,
	"spec" jsonb NOT NULL,
	"dimension" integer NOT NULL,
	"registered_at" timestamp with time zone DEFAULT now() NOT NULL,
	"registered_by" text NOT NULL,
	"retired_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "shadow_comparisons" (
	"comparison_id" serial PRIMARY KEY NOT NULL,
	"active_model_id" text NOT NULL,
	"candidate_model_id" text NOT NULL,
	"image_type" text NOT NULL,
	"overlap_at10" double precision NOT NULL,
	"top1_agrees" boolean NOT NULL,
	"suggestion_agrees" boolean,
	"active_ms" double precision NOT NULL,
	"candidate_ms" double precision NOT NULL,
	"compared_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "active_indexes" ADD COLUMN "model_id" text;--> statement-breakpoint
UPDATE "active_indexes" a SET "model_id" = v."model_id" FROM "index_versions" v WHERE v."index_version_id" = a."index_version_id";--> statement-breakpoint
ALTER TABLE "active_indexes" ALTER COLUMN "model_id" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "active_indexes" DROP CONSTRAINT "active_indexes_matcher_version_image_type_pk";--> statement-breakpoint
ALTER TABLE "active_indexes" ADD CONSTRAINT "active_indexes_model_id_matcher_version_image_type_pk" PRIMARY KEY("model_id","matcher_version","image_type");--> statement-breakpoint
ALTER TABLE "active_model_changes" ADD CONSTRAINT "active_model_changes_model_id_embedding_models_model_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."embedding_models"("model_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "shadow_comparisons_pair_idx" ON "shadow_comparisons" USING btree ("candidate_model_id","active_model_id","comparison_id");