CREATE TABLE "gallery_changes" (
	"seq" bigserial PRIMARY KEY NOT NULL,
	"image_id" integer NOT NULL,
	"kind" text NOT NULL,
	"changed_by" text NOT NULL,
	"changed_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "near_duplicates" (
	"image_id" integer NOT NULL,
	"neighbour_id" integer NOT NULL,
	"similarity" double precision NOT NULL,
	"model_id" text NOT NULL,
	"detected_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "near_duplicates_image_id_neighbour_id_pk" PRIMARY KEY("image_id","neighbour_id")
);
--> statement-breakpoint
ALTER TABLE "near_duplicates" ADD CONSTRAINT "near_duplicates_image_id_images_image_id_fk" FOREIGN KEY ("image_id") REFERENCES "public"."images"("image_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "near_duplicates" ADD CONSTRAINT "near_duplicates_neighbour_id_images_image_id_fk" FOREIGN KEY ("neighbour_id") REFERENCES "public"."images"("image_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "gallery_changes_image_id_idx" ON "gallery_changes" USING btree ("image_id");--> statement-breakpoint
CREATE INDEX "near_duplicates_neighbour_id_idx" ON "near_duplicates" USING btree ("neighbour_id");