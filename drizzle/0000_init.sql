CREATE TABLE "defect_types" (
	"defect_type_id" serial PRIMARY KEY NOT NULL,
	"defect_code" text NOT NULL,
	"defect_name" text NOT NULL,
	"description" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "defect_types_defect_code_unique" UNIQUE("defect_code")
);
--> statement-breakpoint
CREATE TABLE "image_embeddings" (
	"image_id" integer NOT NULL,
	"model_id" text NOT NULL,
	"dimension" integer NOT NULL,
	"embedding" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "image_embeddings_image_id_model_id_pk" PRIMARY KEY("image_id","model_id")
);
--> statement-breakpoint
CREATE TABLE "images" (
	"image_id" serial PRIMARY KEY NOT NULL,
	"product_id" integer NOT NULL,
	"defect_type_id" integer,
	"image_type" text NOT NULL,
	"file_path" text,
	"storage_url" text,
	"content_sha256" text NOT NULL,
	"content_type" text,
	"width" integer NOT NULL,
	"height" integer NOT NULL,
	"file_size_bytes" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "images_content_sha256_unique" UNIQUE("content_sha256"),
	CONSTRAINT "images_type_matches_defect" CHECK (("images"."image_type" = 'normal' and "images"."defect_type_id" is null) or ("images"."image_type" = 'defect' and "images"."defect_type_id" is not null))
);
--> statement-breakpoint
CREATE TABLE "products" (
	"product_id" serial PRIMARY KEY NOT NULL,
	"product_code" text NOT NULL,
	"product_name" text NOT NULL,
	"description" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "products_product_code_unique" UNIQUE("product_code")
);
--> statement-breakpoint
ALTER TABLE "image_embeddings" ADD CONSTRAINT "image_embeddings_image_id_images_image_id_fk" FOREIGN KEY ("image_id") REFERENCES "public"."images"("image_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "images" ADD CONSTRAINT "images_product_id_products_product_id_fk" FOREIGN KEY ("product_id") REFERENCES "public"."products"("product_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "images" ADD CONSTRAINT "images_defect_type_id_defect_types_defect_type_id_fk" FOREIGN KEY ("defect_type_id") REFERENCES "public"."defect_types"("defect_type_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "images_image_type_idx" ON "images" USING btree ("image_type");--> statement-breakpoint
CREATE INDEX "images_product_id_idx" ON "images" USING btree ("product_id");--> statement-breakpoint
CREATE INDEX "images_defect_type_id_idx" ON "images" USING btree ("defect_type_id");